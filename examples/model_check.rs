//! Exhaustive model checking of the sync protocol and the session driver
//! (`merkle_clock::sync::model`): every configuration, then every mutation.
//!
//! ```text
//! cargo run --release --example model_check                # the CI configurations
//! cargo run --release --example model_check -- --json      # one JSON object per line
//! cargo run --release --example model_check -- --large     # the larger configurations too
//! cargo run --release --example model_check -- --appends --no-mutations  # 3 and 4 appends
//! cargo run --release --example model_check -- --no-mutations
//! ```
//!
//! Exits with status 1 when a property fails or a mutation goes unnoticed,
//! after printing the counterexample's trace in words. `--verbose` prints
//! each mutation's counterexample; `--narrate TRACE` tells a trace in words;
//! `--only K` checks the K-th configuration alone; `--mutation NAME` checks
//! one mutation; `--depth D` stops each search at depth D (a bounded check);
//! `--no-reduction` turns the partial-order reduction off (to compare);
//! `--keep N` keeps N frontier states in memory (20,000 by default);
//! `--appenders K` lets only n0..n(K-1) append;
//! `--tiny APPENDS LOSSES DELAYS DUPLICATES REPLICAS` checks one
//! configuration from first contact (`--warm`: replicas that met).

use merkle_clock::sync::model::{self, ModelConfig};
use merkle_clock::sync::mutation::Mutation;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let mut configs = ModelConfig::ci();
    if args.iter().any(|a| a == "--appends") {
        configs = ModelConfig::appends();
    }
    if let Some(k) = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)?.parse::<usize>().ok()) {
        configs = vec![configs.swap_remove(k)];
    }
    if let Some(i) = args.iter().position(|a| a == "--tiny") {
        let appends = args.get(i + 1).and_then(|a| a.parse().ok()).unwrap_or(1);
        let losses = args.get(i + 2).and_then(|a| a.parse().ok()).unwrap_or(0);
        let delays = args.get(i + 3).and_then(|a| a.parse().ok()).unwrap_or(0);
        let dups = args.get(i + 4).and_then(|a| a.parse().ok()).unwrap_or(0);
        let replicas = args.get(i + 5).and_then(|a| a.parse().ok()).unwrap_or(2);
        configs = vec![ModelConfig { losses, delays, duplicates: dups, ..ModelConfig::new("tiny", replicas, appends) }];
    }
    // `--tiny APPENDS LOSSES DELAYS DUPLICATES REPLICAS` with `--warm`
    // (replicas that met) or `--push-off` (the libp2p node's setting).
    for c in &mut configs {
        c.warm |= args.iter().any(|a| a == "--warm");
        // `--keep N`: keep N frontier states in memory (the rest are replayed).
        if let Some(k) = args.iter().position(|a| a == "--keep").and_then(|i| args.get(i + 1)?.parse().ok()) {
            c.max_kept = k;
        }
        // `--no-reduction`: every step from every state (to compare).
        c.reduction &= !args.iter().any(|a| a == "--no-reduction");
        if let Some(k) = args.iter().position(|a| a == "--appenders").and_then(|i| args.get(i + 1)?.parse().ok()) {
            c.appenders = Some(k);
        }
        if args.iter().any(|a| a == "--push-off") {
            c.session.push = false;
        }
    }
    if args.iter().any(|a| a == "--large") {
        configs.extend(ModelConfig::large());
    }
    // `--depth D`: explore each configuration to depth D only (a bounded
    // check: "holds within the bounds", not a proof).
    if let Some(d) = args.iter().position(|a| a == "--depth").and_then(|i| args.get(i + 1)?.parse::<usize>().ok()) {
        for c in &mut configs {
            c.max_depth = d;
        }
    }
    if let Some(i) = args.iter().position(|a| a == "--narrate") {
        let trace = model::parse_trace(&args[i + 1]).expect("a trace");
        for (k, step) in model::narrate(&configs[0], &trace).iter().enumerate() {
            println!("{:>3}. {step}", k + 1);
        }
        return;
    }
    let mut ok = true;
    if !json {
        println!(
            "{:<66} {:>9} {:>11} {:>5} {:>8}  holds",
            "configuration", "states", "transitions", "depth", "seconds"
        );
    }
    for cfg in &configs {
        let out = model::check(cfg);
        ok &= out.holds();
        if json {
            println!(
                "{{\"metric\":\"model_check\",\"config\":\"{}\",\"states\":{},\"transitions\":{},\"reduced\":{},\"depth\":{},\"seconds\":{:.2},\"complete\":{},\"holds\":{}}}",
                out.config,
                out.states,
                out.transitions,
                out.reduced,
                out.depth,
                out.seconds,
                out.complete,
                out.holds()
            );
        } else {
            let holds = match (&out.violation, out.complete) {
                (Some(_), _) => "NO",
                (None, true) => "yes",
                (None, false) => "yes, within the bounds (incomplete)",
            };
            println!(
                "{:<66} {:>9} {:>11} {:>5} {:>8.1}  {holds}",
                out.config, out.states, out.transitions, out.depth, out.seconds
            );
        }
        if let Some(v) = &out.violation {
            eprintln!("{v}");
        }
    }
    if args.iter().any(|a| a == "--no-mutations") {
        std::process::exit(i32::from(!ok));
    }
    // Every CI configuration but the largest (the partition and restart one,
    // a minute on its own): enough to catch each mutation, and an uncaught
    // one costs a full search of each.
    let ci: Vec<ModelConfig> = ModelConfig::ci().into_iter().filter(|c| c.restarts == 0).collect();
    let only: Option<&String> = args.iter().position(|a| a == "--mutation").and_then(|i| args.get(i + 1));
    for m in Mutation::ALL.into_iter().filter(|m| only.is_none_or(|n| n == m.name())) {
        let found = model::check_mutation(&ci, m);
        ok &= found.is_some();
        if json {
            println!("{{\"metric\":\"model_mutation\",\"name\":\"{}\",\"caught\":{}}}", m.name(), found.is_some());
        } else {
            match &found {
                Some(v) => println!(
                    "mutation {:<26} caught: {:?} after {} steps ({})",
                    m.name(),
                    v.property,
                    v.trace.len(),
                    model::format_trace(&v.trace)
                ),
                None => println!("mutation {:<26} NOT caught", m.name()),
            }
        }
        if let (Some(v), true) = (&found, args.iter().any(|a| a == "--verbose")) {
            eprintln!("{v}");
        }
    }
    std::process::exit(i32::from(!ok));
}
