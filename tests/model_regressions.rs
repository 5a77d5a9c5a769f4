//! The model checker (`sync::model`) on small configurations, and every
//! counterexample it found kept as a trace that replays it.
//!
//! The CI configurations themselves run in release (`cargo run --release
//! --example model_check`, a `.ci/run` step); here a debug build checks a
//! small one exhaustively, and each trace is replayed with its mutation
//! (it must fail) and without (every property must hold on every step).

use merkle_clock::sync::model::{self, ModelConfig, Property};
use merkle_clock::sync::mutation::{self, Mutation};

fn two(appends: usize, losses: usize) -> ModelConfig {
    ModelConfig { losses, ..ModelConfig::new("test", 2, appends) }
}

/// Replays `trace` with `m` on: it must break `property`; and without it:
/// every property holds on every step.
fn kept(cfg: &ModelConfig, m: Mutation, trace: &str, property: Property) {
    let trace = model::parse_trace(trace).unwrap();
    let v = mutation::with(Some(m), || model::replay(cfg, &trace)).expect_err("the mutation breaks it");
    assert_eq!(v.property, property, "{v}");
    if let Err(v) = model::replay(cfg, &trace) {
        panic!("the real protocol fails the trace:\n{v}");
    }
}

/// Checks `cfg` exhaustively: every property holds on every reachable state.
fn holds_exhaustively(cfg: &ModelConfig) -> model::Outcome {
    let out = model::check(cfg);
    assert!(out.violation.is_none(), "{}", out.violation.unwrap());
    assert!(out.complete, "{out:?}");
    out
}

#[test]
fn one_append_one_loss_holds_exhaustively() {
    assert!(holds_exhaustively(&two(1, 1)).states > 100);
}

#[test]
fn three_met_replicas_one_append_one_loss_hold_exhaustively() {
    holds_exhaustively(&ModelConfig { losses: 1, warm: true, ..ModelConfig::new("test", 3, 1) });
}

/// Three appends, each by either replica at any point, on replicas that
/// met (the larger ones run in release: `model_check -- --appends`).
#[test]
fn two_met_replicas_three_appends_hold_exhaustively() {
    let out = holds_exhaustively(&ModelConfig { warm: true, ..ModelConfig::new("test", 2, 3) });
    assert!(out.states > 1_000, "{out:?}");
}

/// The partial-order reduction (once nothing but deliveries can happen,
/// the deliveries between two replicas that hold every event are explored
/// alone) finds every property holding where the full search does, with
/// fewer states, and its premise (such a delivery touches only the pair)
/// holds on every step it takes.
#[test]
fn the_reduced_search_holds_where_the_full_one_does() {
    let reduced = ModelConfig { partition: true, warm: true, ..ModelConfig::new("test", 3, 1) };
    let full = ModelConfig { reduction: false, ..reduced.clone() };
    let (r, f) = (model::check(&reduced), model::check(&full));
    for out in [&r, &f] {
        assert!(out.violation.is_none(), "{}", out.violation.as_ref().unwrap());
        assert!(out.complete, "{out:?}");
    }
    assert!(r.reduced > 0 && r.states < f.states && f.reduced == 0, "{r:?} {f:?}");
}

/// The lockup of 0073e4f, which quickcheck found in CI: the
/// acknowledgement of a later message vouched for a lost earlier one (its
/// block), the sender took the peer to hold its heads, and the pair fell
/// silent one event apart. n0's second push (e2) is lost; its first
/// messages are acknowledged.
#[test]
fn an_acked_prediction_does_not_settle_the_pair() {
    kept(&two(2, 1), Mutation::AckedPredictionSettles, "+ a0 d1 a0 l3", Property::Liveness);
}

/// Taking one's own heads as the peer's once everything was sent: the push
/// is lost and both sides fall silent.
#[test]
fn heads_never_advance_on_an_unacknowledged_message() {
    kept(&two(2, 1), Mutation::HeadsOnSend, "+ d0 a1 l1", Property::Liveness);
}

/// A driver that never restarts a session after a loss stays silent with
/// the lost event missing.
#[test]
fn a_lost_push_is_sent_again() {
    kept(&two(1, 1), Mutation::NeverResend, NEVER_RESEND, Property::Lockup);
}

/// A receiver that drops blocks it did not ask for never takes in a pushed
/// event: the sender's later answers, rightly, do not bring it again, and
/// the first one that leaves it out breaks the one-round-trip property
/// (before the pair falls silent one event apart).
#[test]
fn a_pushed_block_is_taken_in() {
    kept(&two(2, 1), Mutation::DropUnasked, DROP_UNASKED, Property::RoundTrip);
}

/// A filter that says it holds everything: the answer to it brings
/// nothing, and the peers fall back on wants, one round trip per level of
/// missing history. n1 answers n0's filter (e1) without e2, which the
/// filter does not hold (the one-round-trip property).
#[test]
fn the_answer_to_a_filter_brings_what_it_does_not_hold() {
    kept(&two(2, 1), Mutation::FilterHoldsAll, FILTER_HOLDS_ALL, Property::RoundTrip);
}

/// With push off (the libp2p node's setting: announcements carry new
/// events, a peer that lacks an announced head pulls it), every property
/// holds too.
#[test]
fn push_off_one_append_one_loss_holds_exhaustively() {
    let out = model::check(&two(1, 1).pull());
    assert!(out.violation.is_none(), "{}", out.violation.unwrap());
    assert!(out.complete && out.states > 10, "{out:?}");
}

/// The checker finds each mutation in a small configuration (the example
/// `model_check` does it on the CI configurations).
#[test]
fn the_checker_catches_the_mutations() {
    for m in [Mutation::NeverResend, Mutation::HeadsOnSend, Mutation::AckedPredictionSettles, Mutation::FilterHoldsAll]
    {
        assert!(model::check_mutation(&[two(2, 1)], m).is_some(), "{m:?} went unnoticed");
    }
}

/// Found by `model_check` on the first CI configuration.
const NEVER_RESEND: &str = "a0 d0 l0";
const DROP_UNASKED: &str = "a0 a0 d1";
const FILTER_HOLDS_ALL: &str = "a0 a1";

#[test]
fn traces_read_and_write() {
    let t = model::parse_trace("a0 t1 + d2 l0 x1 p h r1 f0").unwrap();
    assert_eq!(model::format_trace(&t), "a0 t1 + d2 l0 x1 p h r1 f0");
    assert!(model::parse_trace("q").is_err());
}
