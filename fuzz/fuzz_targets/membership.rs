//! Structured operations on a signed stream (grants of writers and admins,
//! revocations, events, each by any of five keys on any recent parents),
//! delivered to replicas in any order and batching, checked against the
//! independent model of `tests/auth_common/model.rs`: the accepted set, the
//! membership at every accepted event, and the same heads and order for two
//! delivery orders.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../tests/auth_common/mod.rs"]
mod auth_common;

use auth_common::model::{KEYS, Step, accepted, build, deliver, model, permutation};

/// Most steps in one scenario.
const MAX_OPS: usize = 64;

#[derive(Arbitrary, Debug)]
struct Input {
    seed: u64,
    batch: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Grant { author: u8, target: u8, admin: bool, parents: (u8, u8) },
    Revoke { author: u8, target: u8, parents: (u8, u8) },
    Append { author: u8, parents: (u8, u8) },
}

impl Op {
    fn step(&self) -> Step {
        match *self {
            Op::Grant { author, target, admin, parents } => {
                Step { kind: u8::from(admin), author: author % KEYS, target: target % KEYS, parents }
            }
            Op::Revoke { author, target, parents } => {
                Step { kind: 2, author: author % KEYS, target: target % KEYS, parents }
            }
            Op::Append { author, parents } => Step { kind: 3, author: author % KEYS, target: 0, parents },
        }
    }
}

fuzz_target!(|input: Input| {
    let steps: Vec<Step> = input.ops.iter().take(MAX_OPS).map(Op::step).collect();
    let s = build(&steps);
    let n = s.blocks.len();
    let m = model(&s);
    let r = deliver(&s, &permutation(n, input.seed | 1), 1 + usize::from(input.batch % 8));
    assert_eq!(accepted(&r), m.accepted, "the accepted set differs from the model");
    for c in &m.accepted {
        assert_eq!(r.members_at(c).as_ref(), m.members.get(c), "membership at {c} differs from the model");
    }
    let other = deliver(&s, &permutation(n, input.seed.rotate_left(17) | 1), n.max(1));
    assert_eq!(r.heads(), other.heads());
    assert!(r.order().eq(other.order()));
});
