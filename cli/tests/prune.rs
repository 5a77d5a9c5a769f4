//! End-to-end tests of `mclock prune --keep N`: what it prints, `log` and
//! `show` of pruned events, and the clock unchanged.

mod common;

use common::{fails, ok, run};
use serde_json::Value;

#[test]
fn prune_keeps_the_newest_events_and_log_and_show_mark_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["init", "--genesis", "\"prune test\""]);
    let mut cids = Vec::new();
    for i in 0..8 {
        let payload = format!("{{\"n\": {i}, \"text\": \"{}\"}}", "x".repeat(100));
        cids.push(ok(d, &["append", &payload]).trim().to_string());
    }
    let heads_before = ok(d, &["heads"]);
    let log_before: Vec<Value> = ok(d, &["log", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();

    let said = ok(d, &["prune", "--keep", "3"]);
    // 9 events: the newest 3 keep their bytes, the genesis too: 5 pruned.
    assert!(said.contains("pruned 5 events"), "{said}");
    assert!(said.contains("bytes of blocks") && said.contains("bytes freed"), "{said}");

    assert_eq!(ok(d, &["heads"]), heads_before, "pruning changed the heads");
    let log_after: Vec<Value> = ok(d, &["log", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(log_after.len(), log_before.len(), "pruned events left the log");
    for (i, (a, b)) in log_after.iter().zip(&log_before).enumerate() {
        for key in ["position", "height", "cid", "parents"] {
            assert_eq!(a[key], b[key], "log line {i}: {key}");
        }
        let pruned = (1..=5).contains(&i);
        assert_eq!(a["pruned"] == Value::Bool(true), pruned, "log line {i}: {a}");
        assert_eq!(a.get("payload").is_some(), !pruned, "log line {i}: {a}");
    }
    let text = ok(d, &["log"]);
    assert_eq!(text.lines().filter(|l| l.ends_with("(pruned)")).count(), 5, "{text}");

    let shown = ok(d, &["show", &cids[0]]);
    assert!(shown.contains("pruned    yes"), "{shown}");
    assert!(shown.contains("height    1"), "{shown}");
    let shown: Value = serde_json::from_str(&ok(d, &["show", "--json", &cids[0]])).unwrap();
    assert_eq!(shown["pruned"], Value::Bool(true));
    assert!(!ok(d, &["show", &cids[7]]).contains("pruned"), "a kept event shows as pruned");
    assert_eq!(ok(d, &["compare", &cids[0], "--", &cids[7]]).trim(), "before", "compare of a pruned event");

    // Again: nothing more to prune; appends go on as before.
    assert!(ok(d, &["prune", "--keep", "3"]).contains("pruned nothing"));
    ok(d, &["append", "{\"n\": 8}"]);
    assert_eq!(ok(d, &["log", "--json"]).lines().count(), 10);
}

#[test]
fn prune_without_a_count_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fails(tmp.path(), &["prune"]);
    assert!(err.contains("--keep"), "{err}");
}

/// `sync --with` a pruned store: the fresh side is told the parent it lacks
/// (below the kept events, which wait for it) was pruned, and says so, with
/// a clear error; nothing either side held is lost.
#[test]
fn sync_with_a_pruned_store_names_what_it_cannot_supply() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["--store", "full", "init", "--genesis", "\"pruned peer\""]);
    for i in 0..6 {
        ok(d, &["--store", "full", "append", &format!("{{\"n\": {i}}}")]);
    }
    ok(d, &["--store", "full", "prune", "--keep", "2"]);
    ok(d, &["--store", "fresh", "init", "--genesis", "\"pruned peer\""]);
    for _ in 0..2 {
        let out = run(d, &["--store", "fresh", "sync", "--with", "full"]);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{stdout}");
        assert!(stdout.contains("unavailable here: 1 event the store there pruned"), "{stdout}");
        assert_eq!(
            stderr.trim(),
            "error: the stores did not converge: 1 event pruned where it was asked for",
            "{stdout}"
        );
        // The pruned side loses nothing.
        assert_eq!(ok(d, &["--store", "full", "log", "--json"]).lines().count(), 7);
    }
}
