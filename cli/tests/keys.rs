//! End-to-end tests of who may write from the command line: `keygen`,
//! `init --admin`, `grant`, `revoke`, `append --key`, and `log`'s authors.

mod common;

use std::path::Path;

use common::fails;

use serde_json::Value;

/// Runs a command that must succeed; returns its stdout, trimmed.
fn ok(dir: &Path, args: &[&str]) -> String {
    common::ok(dir, args).trim().to_string()
}

#[test]
fn keygen_writes_a_private_key_file_and_never_overwrites_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let public = ok(d, &["keygen", "--out", "me.key"]);
    assert_eq!(public.len(), 64, "{public}");
    assert!(public.chars().all(|c| c.is_ascii_hexdigit()), "{public}");
    let seed = std::fs::read_to_string(d.join("me.key")).unwrap();
    assert_eq!(seed.trim().len(), 64);
    assert_ne!(seed.trim(), public, "the file holds the secret seed, not the public key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("me.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "key file mode {mode:o}");
    }
    let err = fails(d, &["keygen", "--out", "me.key"]);
    assert!(err.contains("exists") && err.contains("never overwrites"), "{err}");
    assert_eq!(std::fs::read_to_string(d.join("me.key")).unwrap(), seed, "the key file is unchanged");
    // Without --out: mclock.key.
    let other = ok(d, &["keygen"]);
    assert_ne!(other, public);
    assert!(d.join("mclock.key").is_file());
}

#[cfg(unix)]
#[test]
fn a_key_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["keygen", "--out", "admin.key"]);
    ok(d, &["init", "--admin", "admin.key"]);
    std::fs::set_permissions(d.join("admin.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = fails(d, &["append", "--key", "admin.key", "1"]);
    assert!(err.contains("readable by others") && err.contains("chmod 600"), "{err}");
}

#[test]
fn init_grant_append_revoke_and_the_revoked_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let admin = ok(d, &["keygen", "--out", "admin.key"]);
    let writer = ok(d, &["keygen", "--out", "writer.key"]);
    // Admins by key file or by public key: the same genesis.
    let stream = ok(d, &["init", "--genesis", r#""notes""#, "--admin", "admin.key"]);
    assert_eq!(ok(d, &["--store", "again", "init", "--genesis", r#""notes""#, "--admin", &admin]), stream);

    // Unsigned, or signed by a non-member: refused, nothing added.
    let err = fails(d, &["append", "1"]);
    assert!(err.contains("--key KEYFILE") && err.contains(&stream), "{err}");
    let err = fails(d, &["append", "--key", "writer.key", "1"]);
    assert!(err.contains("not a member") && err.contains(&writer), "{err}");
    let err = fails(d, &["grant", &writer, "--key", "writer.key"]);
    assert!(err.contains("not a member") && err.contains(&writer), "{err}");
    assert_eq!(ok(d, &["log"]).lines().count(), 1);

    let grant = ok(d, &["grant", &writer, "--key", "admin.key"]);
    let note = ok(d, &["append", "--key", "writer.key", r#"{"note": "hello"}"#]);
    let err = fails(d, &["grant", "writer.key", "--admin", "--key", "writer.key"]);
    assert!(err.contains("not an admin") && err.contains(&writer), "a writer cannot make itself admin: {err}");
    let by_admin = ok(d, &["append", "--key", "admin.key", r#"{"note": "from the admin"}"#]);
    let revoke = ok(d, &["revoke", "writer.key", "--key", "admin.key"]);
    let err = fails(d, &["append", "--key", "writer.key", r#"{"note": "still here?"}"#]);
    assert!(err.contains("revoked") && err.contains(&writer) && err.contains(&revoke), "{err}");
    // Revoked for good: no grant brings the key back.
    let err = fails(d, &["grant", &writer, "--key", "admin.key"]);
    assert!(err.contains("revoked before"), "{err}");

    let log = ok(d, &["log"]);
    let rows: Vec<&str> = log.lines().collect();
    assert_eq!(rows.len(), 5, "{log}");
    let (a8, w8) = (&admin[..8], &writer[..8]);
    assert!(
        rows[1].contains(&grant[grant.len() - 8..]) && rows[1].contains(&format!("{a8}  grant writer {w8}")),
        "{log}"
    );
    assert!(
        rows[2].contains(&note[note.len() - 8..]) && rows[2].contains(&format!("{w8}  {{\"note\":\"hello\"}}")),
        "{log}"
    );
    assert!(rows[3].contains(&by_admin[by_admin.len() - 8..]) && rows[3].contains(a8), "{log}");
    assert!(rows[4].contains(&format!("{a8}  revoke {w8}")), "{log}");
    let json: Vec<Value> = ok(d, &["log", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(json[0].get("author"), None, "the genesis is not signed");
    assert_eq!(json[2]["author"], writer.as_str());
    assert_eq!(json[2]["cid"], note.as_str());
    assert!(ok(d, &["show", &note]).contains(&format!("author    {writer}")));
    let shown: Value = serde_json::from_str(&ok(d, &["show", &note, "--json"])).unwrap();
    assert_eq!(shown["author"], writer.as_str());
}

#[test]
fn key_errors_are_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["keygen", "--out", "admin.key"]);
    let err = fails(d, &["init", "--admin", "nope"]);
    assert!(err.contains("neither a key file nor a public key"), "{err}");
    std::fs::write(d.join("bad.key"), "not hex\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("bad.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let err = fails(d, &["init", "--admin", "bad.key"]);
    assert!(err.contains("not a key file"), "{err}");
    // grant on an open stream.
    ok(d, &["init"]);
    let err = fails(d, &["grant", "admin.key", "--key", "admin.key"]);
    assert!(err.contains("is open"), "{err}");
    // An open stream still takes unsigned appends.
    ok(d, &["append", "1"]);
}
