//! `mclock checkpoint` end to end: on an open stream and a signed one, with
//! reducer states, and refused for a key that is not an admin.

mod common;

use std::path::Path;

use common::fails;
use serde_json::Value;

fn ok(dir: &Path, args: &[&str]) -> String {
    common::ok(dir, args).trim().to_string()
}

/// The checkpoint payload of the event `cid`, as `show --json` prints it.
fn payload(dir: &Path, cid: &str) -> Value {
    let shown: Value = serde_json::from_str(&ok(dir, &["show", cid, "--json"])).unwrap();
    shown["payload"]["checkpoint"].clone()
}

#[test]
fn checkpoint_carries_the_named_states_and_the_skeleton() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["init", "--genesis", r#""likes""#]);
    ok(d, &["append", r#"{"increment": 5}"#]);
    ok(d, &["append", r#"{"set": {"key": "theme", "value": "dark"}}"#]);
    let cid = ok(d, &["checkpoint", "--reducer", "counter", "--reducer", "map"]);
    assert!(cid.starts_with("bafyr4i"), "{cid}");
    assert_eq!(ok(d, &["heads"]), cid, "the checkpoint is an ordinary event at the heads");
    let p = payload(d, &cid);
    assert_eq!(p["count"], 3, "{p}");
    assert!(p["skeleton"]["/"].is_string(), "{p}");
    let states = p["states"].as_object().unwrap();
    assert_eq!(states.keys().collect::<Vec<_>>(), ["counter", "map"]);
    // A checkpoint without reducers carries the skeleton alone.
    let bare = ok(d, &["checkpoint"]);
    assert_eq!(payload(d, &bare)["count"], 4);
}

#[test]
fn checkpoint_on_a_signed_stream_needs_an_admin_key() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["keygen", "--out", "admin.key"]);
    ok(d, &["keygen", "--out", "writer.key"]);
    ok(d, &["init", "--admin", "admin.key"]);
    ok(d, &["grant", "writer.key", "--key", "admin.key"]);
    ok(d, &["append", "--key", "writer.key", r#"{"increment": 1}"#]);
    let err = fails(d, &["checkpoint", "--reducer", "counter"]);
    assert!(err.contains("--key") || err.contains("key"), "{err}");
    let err = fails(d, &["checkpoint", "--key", "writer.key"]);
    assert!(err.contains("not an admin"), "{err}");
    let cid = ok(d, &["checkpoint", "--key", "admin.key", "--reducer", "counter"]);
    assert_eq!(payload(d, &cid)["count"], 3);
}

/// `sync --with OTHER --from-checkpoint CID` starts an empty store from the
/// checkpoint, fetching a few blocks instead of the history, then syncs the
/// events after it: both stores end with the same heads; the events below
/// the cut are not held here. A second start into the same store is refused.
#[test]
fn sync_from_a_checkpoint_starts_a_new_store_without_the_history() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let full = |args: &[&str]| ok(d, &[&["--store", "full"], args].concat());
    let thin = |args: &[&str]| ok(d, &[&["--store", "thin"], args].concat());
    full(&["init", "--genesis", r#""likes""#]);
    for i in 1..=20 {
        full(&["append", &format!(r#"{{"increment": {i}}}"#)]);
    }
    let cp = full(&["checkpoint", "--reducer", "counter"]);
    full(&["append", r#"{"increment": 100}"#]);
    let said = thin(&["sync", "--with", "full", "--from-checkpoint", &cp]);
    assert!(said.contains("started from checkpoint"), "{said}");
    assert!(said.contains("the same on both"), "{said}");
    assert_eq!(thin(&["heads"]), full(&["heads"]));
    let again = fails(d, &["--store", "thin", "sync", "--with", "full", "--from-checkpoint", &cp]);
    assert!(again.contains("already holds stream"), "{again}");
}
