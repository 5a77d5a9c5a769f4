//! `mclock serve` as a real process: its two lines, then `sync --peer` and
//! `fetch --gateway` against it, then a clean stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn mclock(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mclock")).args(args).current_dir(dir).output().expect("the mclock binary runs")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = mclock(dir, args);
    assert!(out.status.success(), "mclock {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A running `mclock serve`, killed if the test fails before stopping it.
struct Served {
    child: Child,
    libp2p: String,
    gateway: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path, store: &str) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mclock"))
        .args(["--store", store, "serve"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Reading ends when the line is printed or the process dies (EOF).
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || lines.next().expect("serve printed a line").unwrap();
    let (first, second) = (next(), next());
    let libp2p = first.strip_prefix("libp2p ").unwrap_or_else(|| panic!("first line: {first}")).to_string();
    let gateway = second.strip_prefix("gateway ").unwrap_or_else(|| panic!("second line: {second}")).to_string();
    assert!(libp2p.starts_with("/ip4/127.0.0.1/tcp/") && libp2p.contains("/p2p/12D3KooW"), "{libp2p}");
    assert!(gateway.starts_with("http://127.0.0.1:"), "{gateway}");
    Served { child, libp2p, gateway }
}

/// Sends SIGTERM and waits (at most 30 s) for a clean exit.
fn stop(mut served: Served) {
    let pid = served.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            assert!(status.success(), "serve exits cleanly on SIGTERM: {status}");
            return;
        }
        assert!(Instant::now() < deadline, "serve did not stop within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_then_sync_peer_and_fetch_gateway_against_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let genesis = r#"{"list": "served"}"#;
    ok(d, &["--store", "a", "init", "--genesis", genesis]);
    for i in 0..20 {
        ok(d, &["--store", "a", "append", &format!(r#"{{"n": {i}}}"#)]);
    }
    // b holds the same stream and one event a lacks.
    ok(d, &["--store", "b", "init", "--genesis", genesis]);
    ok(d, &["--store", "b", "append", r#"{"from": "b"}"#]);

    let served = serve(d, "a");
    let out = ok(d, &["--store", "b", "sync", "--peer", &served.libp2p, "--timeout", "30"]);
    assert!(out.starts_with(&format!("synced with {}: +20 events, now 22 events", served.libp2p)), "{out}");
    assert!(out.contains("(the same on both)"), "{out}");
    // Two heads now: a's chain and b's event, on both sides.
    let heads: Vec<String> = ok(d, &["--store", "b", "heads"]).lines().map(str::to_string).collect();
    assert_eq!(heads.len(), 2);

    // A fresh store fills from the gateway: the stream as of each head.
    let mut added = 0;
    for head in &heads {
        let out = ok(d, &["--store", "c", "fetch", "--gateway", &served.gateway, head]);
        assert!(out.starts_with("fetched ") && out.contains("every one verified"), "{out}");
        let new: usize = out.split(" new events").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
        added += new;
    }
    assert_eq!(added, 22, "the genesis, a's 20 and b's event, each once");
    stop(served);

    // Stopped cleanly: the store opens again, and holds b's event (synced in).
    assert_eq!(ok(d, &["--store", "a", "log"]), ok(d, &["--store", "b", "log"]));
    assert_eq!(ok(d, &["--store", "c", "log"]), ok(d, &["--store", "b", "log"]));
}

#[test]
fn fetch_from_nowhere_and_an_unknown_cid_fail_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["--store", "a", "init", "--genesis", "1"]);
    let served = serve(d, "a");
    let unknown = "bafyr4ibebv3twrvyqxyqe2fo7m7ijzmn7hpfpmsv3olmabvzrp5mb2tpta";
    let out = mclock(d, &["--store", "c", "fetch", "--gateway", &served.gateway, unknown]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("not found; nothing fetched") && err.lines().count() == 1, "{err}");
    let out = mclock(d, &["--store", "c", "fetch", "--gateway", "https://example.invalid", unknown]);
    assert!(String::from_utf8(out.stderr).unwrap().contains("only http://"));
    stop(served);
}

#[test]
fn sync_peer_and_fetch_gateway_against_a_pruned_store_name_what_they_cannot_get() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let genesis = r#"{"list": "pruned"}"#;
    ok(d, &["--store", "a", "init", "--genesis", genesis]);
    for i in 0..10 {
        ok(d, &["--store", "a", "append", &format!(r#"{{"n": {i}}}"#)]);
    }
    assert!(ok(d, &["--store", "a", "prune", "--keep", "3"]).contains("pruned "));
    let head = ok(d, &["--store", "a", "heads"]).trim().to_string();
    // b holds one event a lacks: it reaches a before the sync gives up.
    ok(d, &["--store", "b", "init", "--genesis", genesis]);
    ok(d, &["--store", "b", "append", r#"{"from": "b"}"#]);

    let served = serve(d, "a");
    // The peer answers `pruned`: the sync ends with what it could not get,
    // not with its timeout.
    let out = mclock(d, &["--store", "b", "sync", "--peer", &served.libp2p, "--timeout", "60"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("unavailable here: 1 event the peer pruned"), "{stdout}");
    assert!(stderr.contains("the peer pruned the 1 event this store still lacks"), "{stderr}");
    assert!(!stderr.contains("not in sync after"), "it waited for its timeout: {stderr}");

    // The gateway's CAR stops at the horizon; the fetch says what it lacks.
    let out = mclock(d, &["--store", "c", "fetch", "--gateway", &served.gateway, &head]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("most likely pruned there") && stderr.contains("start from a checkpoint"), "{stderr}");
    stop(served);
    assert!(ok(d, &["--store", "a", "log"]).contains("from"), "b's event did not reach the pruned peer");
}

/// `fetch --gateway --from-checkpoint CP HEAD` starts a new store from a
/// checkpoint served by a pruned peer's gateway: the checkpoint and its cut,
/// then the events after it, block by block, and a late event (written
/// concurrently with the checkpoint, its parent below the cut) admitted by
/// looking its parent up in the skeleton. No pruned payload is asked for:
/// the served store has none, and the fetch still completes.
#[test]
fn fetch_gateway_from_a_checkpoint_starts_a_store_without_the_history() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let genesis = r#""likes""#;
    ok(d, &["--store", "a", "init", "--genesis", genesis]);
    for i in 1..=10 {
        ok(d, &["--store", "a", "append", &format!(r#"{{"increment": {i}}}"#)]);
    }
    // b forks off before the checkpoint and writes a late event.
    ok(d, &["--store", "b", "init", "--genesis", genesis]);
    ok(d, &["--store", "b", "sync", "--with", "a"]);
    ok(d, &["--store", "b", "append", r#"{"increment": 1000}"#]);
    let cp = ok(d, &["--store", "a", "checkpoint", "--reducer", "counter"]).trim().to_string();
    ok(d, &["--store", "a", "append", r#"{"increment": 100}"#]);
    assert!(ok(d, &["--store", "a", "prune", "--keep", "2"]).contains("pruned "));
    ok(d, &["--store", "a", "sync", "--with", "b"]);
    ok(d, &["--store", "a", "append", r#"{"increment": 7}"#]);
    let head = ok(d, &["--store", "a", "heads"]).trim().to_string();
    assert_eq!(head.lines().count(), 1, "a merged b's late event");

    let served = serve(d, "a");
    let said = ok(d, &["--store", "c", "fetch", "--gateway", &served.gateway, "--from-checkpoint", &cp, &head]);
    assert!(said.contains("started from checkpoint") && said.contains("the 11 events below it are not"), "{said}");
    // The checkpoint's successor, b's late event, and the merge.
    assert!(said.contains("+3 events after the checkpoint"), "{said}");
    // One request a block: the checkpoint's 4 blocks (read again by the
    // bootstrap after the genesis lookup, from what was fetched: 11 requests
    // before), the 3 events after it, and the skeleton part that admits b's.
    assert!(said.contains("(8 requests to the gateways in all)"), "{said}");
    assert_eq!(ok(d, &["--store", "c", "heads"]).trim(), head);
    let again = mclock(d, &["--store", "c", "fetch", "--gateway", &served.gateway, "--from-checkpoint", &cp, &head]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && stderr.contains("already holds stream"), "{stderr}");
    stop(served);
    // Held: the genesis, the cut (its skeleton only, marked), the checkpoint
    // and the three after it; none of the ten events below the cut.
    let log = ok(d, &["--store", "c", "log"]);
    assert_eq!(log.lines().count(), 6, "{log}");
    assert_eq!(log.matches("(pruned)").count(), 1, "{log}");
    for held in [r#"{"increment":1000}"#, r#"{"increment":100}"#, r#"{"increment":7}"#, "checkpoint"] {
        assert!(log.contains(held), "{held} missing: {log}");
    }
}
