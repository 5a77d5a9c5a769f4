//! Properties of signed streams: the accepted set, heads and order do not
//! depend on delivery order; the accepted set equals an independent model
//! computed from the whole block set; membership computed incrementally
//! equals membership computed from scratch at every event.

mod auth_common;

use auth_common::Mem;
use auth_common::model::{KEYS, Step, accepted, build, deliver, model, permutation};
use quickcheck::{Arbitrary, Gen, QuickCheck};

/// A [`Step`] quickcheck can make.
#[derive(Debug, Clone)]
struct QStep(Step);

impl Arbitrary for QStep {
    fn arbitrary(g: &mut Gen) -> Self {
        // Half the steps by the genesis's admins, so that streams grow.
        let a = u8::arbitrary(g);
        QStep(Step {
            kind: u8::arbitrary(g) % 6,
            author: if a % 2 == 0 { (a / 2) % 2 } else { (a / 2) % KEYS },
            target: u8::arbitrary(g) % KEYS,
            parents: (u8::arbitrary(g), u8::arbitrary(g)),
        })
    }
}

fn steps(q: &[QStep]) -> Vec<Step> {
    q.iter().map(|s| s.0.clone()).collect()
}

#[test]
fn prop_signed_delivery_order_does_not_matter() {
    fn prop(q: Vec<QStep>, seed1: u64, seed2: u64, batch: u8) -> bool {
        let s = build(&steps(&q));
        let n = s.blocks.len();
        let a = deliver(&s, &(0..n).collect::<Vec<_>>(), 1);
        let b = deliver(&s, &permutation(n, seed1 | 1), 1 + batch as usize % 7);
        let c = deliver(&s, &permutation(n, seed2 | 1), n.max(1));
        let same = |x: &Mem, y: &Mem| {
            x.heads() == y.heads()
                && x.order().collect::<Vec<_>>() == y.order().collect::<Vec<_>>()
                && x.members() == y.members()
        };
        // (What stays pending may differ: a replica does not remember the
        // events it refused, so a child that arrives after its refused parent
        // waits until evicted, while one that arrived before is refused with it.)
        same(&a, &b) && same(&a, &c)
    }
    QuickCheck::new().tests(100).rng(Gen::new(30)).quickcheck(prop as fn(Vec<QStep>, u64, u64, u8) -> bool);
}

#[test]
fn prop_signed_accepted_set_equals_the_model() {
    fn prop(q: Vec<QStep>, seed: u64) -> bool {
        let s = build(&steps(&q));
        let r = deliver(&s, &permutation(s.blocks.len(), seed | 1), 3);
        let m = model(&s);
        if accepted(&r) != m.accepted {
            eprintln!("replica {:?}\nmodel {:?}", accepted(&r), m.accepted);
            return false;
        }
        true
    }
    QuickCheck::new().tests(150).rng(Gen::new(30)).quickcheck(prop as fn(Vec<QStep>, u64) -> bool);
}

#[test]
fn prop_incremental_membership_equals_from_scratch() {
    fn prop(q: Vec<QStep>, seed: u64) -> bool {
        let s = build(&steps(&q));
        let r = deliver(&s, &permutation(s.blocks.len(), seed | 1), 2);
        let m = model(&s);
        m.accepted.iter().all(|c| r.members_at(c).as_ref() == m.members.get(c))
    }
    QuickCheck::new().tests(150).rng(Gen::new(30)).quickcheck(prop as fn(Vec<QStep>, u64) -> bool);
}

/// The generator makes interesting streams: some events accepted, some
/// refused, membership changing, so the properties are not vacuous.
#[test]
fn the_generator_makes_accepted_and_refused_events_and_membership_changes() {
    let mut g = Gen::new(40);
    let (mut acc, mut rej, mut ops) = (0, 0, 0);
    for _ in 0..50 {
        let q: Vec<QStep> = Arbitrary::arbitrary(&mut g);
        let s = build(&steps(&q));
        let m = model(&s);
        acc += m.accepted.len();
        rej += s.blocks.len() - m.accepted.len();
        ops += m.accepted.iter().filter(|c| s.meta[*c].2.is_some()).count();
    }
    assert!(acc > 80 && rej > 80 && ops > 20, "accepted {acc}, refused {rej}, membership events {ops}");
}
