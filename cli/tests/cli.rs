//! End-to-end tests of the `mclock` binary, each in its own temporary directory.

mod common;

use std::path::Path;

use common::{fails, ok, run};

use serde_json::Value;

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

/// The tail of a CID that `log` prints.
fn tail(cid: &str) -> &str {
    &cid[cid.len() - 8..]
}

#[test]
fn init_append_log_heads_show() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let stream = ok(d, &["init", "--genesis", r#"{"list": "groceries"}"#]).trim().to_string();
    assert!(stream.starts_with("bafyr4i"), "{stream}");
    assert!(d.join(".mclock/mclock.redb").is_file());
    assert_eq!(std::fs::read_to_string(d.join(".mclock/stream")).unwrap().trim(), stream);
    // The same genesis names the same stream, anywhere.
    assert_eq!(ok(d, &["--store", "other", "init", "--genesis", r#"{"list": "groceries"}"#]).trim(), stream);

    let a = ok(d, &["append", r#"{"item": "milk", "qty": 2}"#]).trim().to_string();
    let b = ok(d, &["append", r#"["bread", 1.5, null, true]"#]).trim().to_string();
    let c = ok(
        d,
        &["append", r#"{"raw": {"/": {"bytes": "aGVsbG8"}}, "see": {"/": "BAFY"}}"#.replace("BAFY", &a).as_str()],
    )
    .trim()
    .to_string();
    assert_eq!(lines(&ok(d, &["heads"])), vec![c.clone()]);

    let log = ok(d, &["log"]);
    let rows = lines(&log);
    assert_eq!(rows.len(), 4, "{log}");
    assert!(rows[0].contains("h0") && rows[0].contains(tail(&stream)) && rows[0].contains("groceries"), "{log}");
    assert!(rows[1].contains(tail(&a)) && rows[1].contains(r#"{"item":"milk","qty":2}"#), "{log}");

    let json: Vec<Value> = ok(d, &["log", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(json.len(), 4);
    for (i, (event, cid)) in json.iter().zip([&stream, &a, &b, &c]).enumerate() {
        assert_eq!(event["position"], i);
        assert_eq!(event["height"], i);
        assert_eq!(event["cid"], cid.as_str());
    }
    assert_eq!(json[1]["payload"], serde_json::json!({"item": "milk", "qty": 2}));
    assert_eq!(json[2]["payload"], serde_json::json!(["bread", 1.5, null, true]));
    assert_eq!(json[2]["parents"], serde_json::json!([a]));
    assert_eq!(json[3]["payload"]["raw"], serde_json::json!({"/": {"bytes": "aGVsbG8"}}));
    assert_eq!(json[3]["payload"]["see"], serde_json::json!({"/": a}));

    let shown = ok(d, &["show", &b]);
    assert!(shown.contains("height    2"), "{shown}");
    assert!(shown.contains(&format!("parents   {a}")), "{shown}");
    assert!(shown.contains(&format!("children  {c}")), "{shown}");
    assert!(shown.contains("head      no"), "{shown}");
    // A tail as `log` prints it works too.
    assert_eq!(ok(d, &["show", &format!("…{}", tail(&b))]), shown);
    let j: Value = serde_json::from_str(&ok(d, &["show", "--json", &c])).unwrap();
    assert_eq!(j["head"], true);
    assert_eq!(j["height"], 3);
}

/// Two stores of one stream that each appended while apart.
fn diverged(d: &Path) -> (String, String, String) {
    let genesis = r#"{"chat": "room 1"}"#;
    let g = ok(d, &["--store", "a", "init", "--genesis", genesis]).trim().to_string();
    ok(d, &["--store", "b", "init", "--genesis", genesis]);
    let mut a = String::new();
    for i in 0..3 {
        a = ok(d, &["--store", "a", "append", &format!(r#"{{"from": "a", "n": {i}}}"#)]).trim().to_string();
    }
    let b = ok(d, &["--store", "b", "append", r#"{"from": "b"}"#]).trim().to_string();
    (g, a, b)
}

#[test]
fn sync_with_reconciles_two_stores() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (_, a, b) = diverged(d);
    assert_ne!(ok(d, &["--store", "a", "heads"]), ok(d, &["--store", "b", "heads"]));

    let report = ok(d, &["--store", "a", "sync", "--with", "b"]);
    assert!(report.contains("round trip") && report.contains("bytes"), "{report}");
    assert!(report.contains("here:  +1 events") && report.contains("there: +3 events"), "{report}");
    let heads = ok(d, &["--store", "a", "heads"]);
    assert_eq!(heads, ok(d, &["--store", "b", "heads"]));
    let mut want = vec![a, b];
    want.sort();
    let mut got = lines(&heads);
    got.sort();
    assert_eq!(got, want);
    assert_eq!(ok(d, &["--store", "a", "log"]), ok(d, &["--store", "b", "log"]));

    // Nothing left to do.
    let again = ok(d, &["--store", "b", "sync", "--with", "a"]);
    assert!(again.contains("here:  +0 events") && again.contains("there: +0 events"), "{again}");
    // Each side's driver opens a session and learns the other's heads are its own: one message each way.
    assert!(again.contains("in 1 round trip: 2 messages"), "{again}");

    // A store of another stream is refused.
    ok(d, &["--store", "c", "init", "--genesis", r#""another""#]);
    let err = fails(d, &["--store", "a", "sync", "--with", "c"]);
    assert!(err.contains("holds stream"), "{err}");
}

#[test]
fn compare_prints_the_relation() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (g, a, b) = diverged(d);
    ok(d, &["--store", "a", "sync", "--with", "b"]);
    let cmp = |x: &str, y: &str| ok(d, &["--store", "a", "compare", x, "--", y]).trim().to_string();
    assert_eq!(cmp(&a, &b), "concurrent");
    assert_eq!(cmp(&g, &a), "before");
    assert_eq!(cmp(&a, &g), "after");
    assert_eq!(cmp(&a, &a), "equal");
    // Clocks of several events, and tails.
    let both = ok(d, &["--store", "a", "compare", tail(&a), &b, "--", &g]);
    assert_eq!(both.trim(), "after");
    let m = ok(d, &["--store", "a", "append", r#""merge""#]).trim().to_string();
    let set = ok(d, &["--store", "a", "compare", &a, &b, "--", &m]);
    assert_eq!(set.trim(), "before");
}

#[test]
fn export_car_then_import_car_gives_the_same_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (_, _, _) = diverged(d);
    ok(d, &["--store", "a", "sync", "--with", "b"]);
    let exported = ok(d, &["--store", "a", "export-car", "a.car"]);
    assert!(exported.contains("exported 5 blocks"), "{exported}");
    let car = std::fs::read(d.join("a.car")).unwrap();

    // Into a store that does not exist yet: the stream comes from the CAR's genesis.
    let imported = ok(d, &["--store", "fresh", "import-car", "a.car"]);
    assert!(imported.contains("5 new events"), "{imported}");
    assert_eq!(ok(d, &["--store", "fresh", "heads"]), ok(d, &["--store", "a", "heads"]));
    assert_eq!(ok(d, &["--store", "fresh", "log"]), ok(d, &["--store", "a", "log"]));
    assert_eq!(ok(d, &["--store", "fresh", "log", "--json"]), ok(d, &["--store", "a", "log", "--json"]));
    // Again: nothing new.
    let again = ok(d, &["--store", "fresh", "import-car", "a.car"]);
    assert!(again.contains("0 new events, 5 already held"), "{again}");

    // Into a store that holds part of the stream.
    ok(d, &["--store", "part", "init", "--genesis", r#"{"chat": "room 1"}"#]);
    ok(d, &["--store", "part", "import-car", "a.car"]);
    assert_eq!(ok(d, &["--store", "part", "log"]), ok(d, &["--store", "a", "log"]));

    // A damaged CAR is refused whole: nothing is kept, no store is made.
    let mut bad = car.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    std::fs::write(d.join("bad.car"), &bad).unwrap();
    let err = fails(d, &["--store", "none", "import-car", "bad.car"]);
    assert!(err.contains("nothing imported"), "{err}");
    assert!(!d.join("none").exists());
    std::fs::write(d.join("short.car"), &car[..car.len() - 7]).unwrap();
    fails(d, &["--store", "none", "import-car", "short.car"]);
    assert!(!d.join("none").exists());

    // A CAR of another stream is refused.
    ok(d, &["--store", "c", "init", "--genesis", r#""another""#]);
    let err = fails(d, &["--store", "c", "import-car", "a.car"]);
    assert!(err.contains("holds stream"), "{err}");
}

#[test]
fn draw_in_all_three_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    diverged(d);
    ok(d, &["--store", "a", "sync", "--with", "b"]);
    let heads = lines(&ok(d, &["--store", "a", "heads"]));
    assert_eq!(heads.len(), 2);

    let svg = ok(d, &["--store", "a", "draw", "--format", "svg"]);
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<g>").count(), svg.matches("</g>").count() - 1); // node groups + the edge group
    for h in &heads {
        assert!(svg.contains(tail(h)), "head {h} missing from the SVG");
    }
    assert_eq!(svg.matches(">HEAD</text>").count(), 2);
    assert!(svg.contains(">genesis</text>"));

    let dot = ok(d, &["--store", "a", "draw", "--format", "dot"]);
    assert!(dot.starts_with("digraph merkle_clock {") && dot.trim_end().ends_with('}'), "{dot}");
    assert_eq!(dot.matches(" -> ").count(), 4, "{dot}"); // g -> a1 -> a2 -> a3, g -> b
    for h in &heads {
        assert!(dot.contains(tail(h)));
    }
    assert_eq!(dot.matches("xlabel=\"head\"").count(), 2);

    let mermaid = ok(d, &["--store", "a", "draw", "--format", "mermaid"]);
    assert!(mermaid.contains("flowchart LR"), "{mermaid}");
    assert_eq!(mermaid.matches(" --> ").count(), 4, "{mermaid}");
    for h in &heads {
        assert!(mermaid.contains(tail(h)));
    }

    // To a file.
    let wrote = ok(d, &["--store", "a", "draw", "--format", "svg", "-o", "dag.svg"]);
    assert!(wrote.contains("dag.svg"));
    assert_eq!(std::fs::read_to_string(d.join("dag.svg")).unwrap(), svg);
}

#[test]
fn draw_caps_big_dags_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["init", "--genesis", "\"long\""]);
    for i in 0..14 {
        ok(d, &["append", &i.to_string()]);
    }
    let svg = ok(d, &["draw", "--layers", "5"]);
    assert!(svg.contains("showing the last 5 of 15 layers (heights 10–14)"), "{svg}");
    // Five events, plus the background and the legend's head swatch.
    assert_eq!(svg.matches("<rect x=").count(), 5 + 2, "{svg}");
    let mermaid = ok(d, &["draw", "--format", "mermaid", "--layers", "3"]);
    assert!(mermaid.contains("showing the last 3 of 15 layers"), "{mermaid}");
}

#[test]
fn demo_converges_deterministically_and_draws() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let args = ["demo", "--nodes", "3", "--events", "3", "--seed", "7", "--tick-ms", "0", "-o", "pic.svg"];
    let out = ok(d, &args);
    let phases =
        ["[1/6] lossy network", "[2/6] partition", "[3/6] heal + late joiner", "[4/6] restart", "[5/6] revocation"];
    for phase in phases.into_iter().chain(["[6/6] quiet"]) {
        assert!(out.contains(phase), "{out}");
    }
    // 9 appends, 2 grants and a revocation by n0, and what n1 wrote before it
    // learned of its revocation; what it wrote after was refused everywhere.
    let events = out.lines().find(|l| l.trim_start().starts_with("events ")).expect("an events line");
    let total = demo_events(&out);
    assert!(events.contains("9 appended (3 replicas × 3) + 2 grants (the invitation) and 1 revocation by n0"), "{out}");
    assert!(out.contains(&format!("converged    yes: all 3 replicas hold the same {total} events")), "{out}");
    let revoked = out.lines().find(|l| l.trim_start().starts_with("revoked ")).expect("a revocation line");
    assert!(revoked.contains("writer n1 (by n0 at tick 48; it learned at tick"), "{out}");
    assert!(revoked.contains("events refused by all 3 replicas, held by none"), "{out}");
    assert!(out.contains("nothing lost"), "{out}");
    let svg = std::fs::read_to_string(d.join("pic.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    // The refused events are drawn, marked.
    assert_eq!(svg.contains("REFUSED"), !revoked.contains(": 0 events refused"), "{out}");
    let heads: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("heads"))
        .take_while(|l| !l.trim_start().starts_with("picture"))
        .map(|l| l.split_whitespace().last().unwrap())
        .collect();
    assert!(!heads.is_empty(), "{out}");
    for h in &heads {
        assert!(h.starts_with("bafyr4i"), "{h}");
        assert!(svg.contains(tail(h)), "head {h} not in the picture");
    }
    // The same seed gives the same run.
    let again = ok(d, &args);
    assert_eq!(demo_summary(&out), demo_summary(&again));
    assert_eq!(std::fs::read_to_string(d.join("pic.svg")).unwrap(), svg);

    // --keep leaves real stores behind.
    let kept = ok(d, &["demo", "--nodes", "3", "--events", "2", "--tick-ms", "0", "--keep", "stores", "-o", "k.svg"]);
    let log0 = ok(d, &["--store", "stores/node-0", "log"]);
    assert_eq!(log0, ok(d, &["--store", "stores/node-2", "log"]));
    // The restarted replica's file, reopened in the run, holds the same stream.
    assert_eq!(log0, ok(d, &["--store", "stores/node-1", "log"]));
    assert_eq!(log0.lines().count(), demo_events(&kept), "{kept}");
}

/// The events the demo's summary counts.
fn demo_events(out: &str) -> usize {
    let events = out.lines().find(|l| l.trim_start().starts_with("events ")).expect("an events line");
    events.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number of events")
}

/// The demo's output without the lines that name a temporary directory or a duration.
fn demo_summary(out: &str) -> String {
    out.lines().filter(|l| !l.contains("time ") && !l.starts_with("stores in")).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_demo_converges_for_several_seeds_and_each_seed_gives_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for (seed, nodes, loss) in [("1", "3", "0.2"), ("2", "3", "0.5"), ("3", "4", "0.2"), ("11", "5", "0.3")] {
        let args = ["demo", "--nodes", nodes, "--events", "4", "--seed", seed, "--loss", loss, "--tick-ms", "0"];
        let args = [&args[..], &["-o", "seeded.svg"]].concat();
        let out = run(d, &args);
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "seed {seed}: {stdout}");
        assert!(stdout.contains(&format!("converged    yes: all {nodes} replicas")), "seed {seed}: {stdout}");
        assert!(stdout.contains("nothing lost"), "seed {seed}: {stdout}");
        assert!(stdout.contains("0 protocol errors"), "seed {seed}: {stdout}");
        let again = ok(d, &args);
        assert_eq!(demo_summary(&stdout), demo_summary(&again), "seed {seed} ran differently twice");
    }
}

#[test]
fn errors_are_one_line_and_a_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let err = fails(d, &["log"]);
    assert!(err.contains("no mclock store"), "{err}");
    fails(d, &["--store", "nowhere", "append", "1"]);
    ok(d, &["init"]);
    let err = fails(d, &["init", "--genesis", "2"]);
    assert!(err.contains("already holds stream"), "{err}");
    let err = fails(d, &["append", "{not json"]);
    assert!(err.contains("invalid JSON"), "{err}");
    fails(d, &["append", r#"{"/": "not a cid"}"#]);
    let err = fails(d, &["show", "bafyr4iazsyadwofhzuhf2xutqflgbg3tfizw7pvbytouwa4baju7d65lgq"]);
    assert!(err.contains("unknown event"), "{err}");
    let err = fails(d, &["show", "zzzzzzzz"]);
    assert!(err.contains("unknown event"), "{err}");
    fails(d, &["show", "?"]);
    fails(d, &["compare", "zzzzzzzz", "--", "yyyyyyyy"]);
    fails(d, &["compare", "zzzzzzzz"]);
    fails(d, &["import-car", "missing.car"]);
    fails(d, &["sync", "--with", "nowhere"]);
    fails(d, &["draw", "--format", "png"]);
    fails(d, &["frobnicate"]);
    fails(d, &["demo", "--nodes", "1"]);
    // Help works everywhere.
    for cmd in ["init", "append", "log", "heads", "show", "compare", "export-car", "import-car", "sync", "draw", "demo"]
    {
        let help = ok(d, &[cmd, "--help"]);
        assert!(help.contains("Usage: mclock"), "{cmd}: {help}");
    }
}
