//! Structured operations on 2–5 replicas (append, deliver, drop, duplicate,
//! reorder, sync by the protocol (with a message dropped, duplicated or late),
//! exchange of every block) checked against the reference model: the union of every
//! block created. `cargo fuzz fmt merge <input>` prints the scenario as the
//! text script that `tests/fuzz_crashes/merge/` keeps.
#![no_main]

use std::fmt;

use arbitrary::Arbitrary;

#[allow(dead_code)]
#[path = "../../tests/fuzz_regressions.rs"]
mod checks;

use checks::{Fault, MergeOp, MergeScript};

/// Most steps in one scenario.
const MAX_OPS: usize = 160;

#[derive(Arbitrary)]
struct Input {
    replicas: u8,
    max_parents: u8,
    sync_max_blocks: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Append { replica: u8, payload: u8 },
    Deliver { replica: u8, count: u8 },
    Drop { replica: u8, index: u8 },
    Duplicate { replica: u8, index: u8 },
    Reorder { replica: u8, from: u8, to: u8 },
    Sync { a: u8, b: u8 },
    Exchange { a: u8, b: u8 },
    SyncFaulty { a: u8, b: u8, round: u8, fault: FuzzFault },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FuzzFault {
    Drop,
    Duplicate,
    Late,
}

impl Input {
    fn script(&self) -> MergeScript {
        let replicas = 2 + usize::from(self.replicas % 4);
        let r = |x: u8| usize::from(x) % replicas;
        MergeScript {
            replicas,
            max_parents: [1, 2, 3, 1024][usize::from(self.max_parents % 4)],
            sync_max_blocks: [0, 0, 1, 3][usize::from(self.sync_max_blocks % 4)],
            ops: self
                .ops
                .iter()
                .take(MAX_OPS)
                .map(|op| match *op {
                    Op::Append { replica, payload } => {
                        MergeOp::Append { replica: r(replica), payload: u64::from(payload % 8) }
                    }
                    Op::Deliver { replica, count } => {
                        MergeOp::Deliver { replica: r(replica), count: 1 + usize::from(count % 8) }
                    }
                    Op::Drop { replica, index } => MergeOp::Drop { replica: r(replica), index: usize::from(index) },
                    Op::Duplicate { replica, index } => {
                        MergeOp::Duplicate { replica: r(replica), index: usize::from(index) }
                    }
                    Op::Reorder { replica, from, to } => {
                        MergeOp::Reorder { replica: r(replica), from: usize::from(from), to: usize::from(to) }
                    }
                    Op::Sync { a, b } => MergeOp::Sync { a: r(a), b: r(b) },
                    Op::Exchange { a, b } => MergeOp::Exchange { a: r(a), b: r(b) },
                    Op::SyncFaulty { a, b, round, fault } => MergeOp::SyncFaulty {
                        a: r(a),
                        b: r(b),
                        round: usize::from(round % 4),
                        fault: match fault {
                            FuzzFault::Drop => Fault::Drop,
                            FuzzFault::Duplicate => Fault::Duplicate,
                            FuzzFault::Late => Fault::Late,
                        },
                    },
                })
                .collect(),
        }
    }
}

/// Prints the scenario as its text script (what `cargo fuzz fmt` shows).
impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.script())
    }
}

libfuzzer_sys::fuzz_target!(|input: Input| checks::check_merge(&input.script()));
