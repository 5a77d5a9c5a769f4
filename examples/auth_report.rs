//! The signed-stream rows of the performance report (kept apart from
//! `perf_report` so that each file stays readable):
//!
//! ```text
//! cargo run --release --example auth_report [-- --quick]
//! ```
//!
//! - `ingest_signed`: signed blocks (a chain by one writer) through
//!   `Replica::ingest_many` in batches of 1,000, against the same run's
//!   unsigned ingest of the same-shaped chain on an open stream plus bare
//!   `verify_strict` of the same signatures over their signing inputs.
//!   Target: ratio (unsigned + verify time) / signed time at least 0.9.
//! - `append_signed`: `Replica::append` with a signer, against bare
//!   sign + encode + hash of the same events (`auth::signed_event`).
//!   Target: ratio at least 0.7.
//! - `membership_check_growth`: the cost of validating one event (ingest of
//!   a signed child of the head: signature, membership, index, commit) after
//!   1,000,000 events of history over after 1,000, each history with 100
//!   grants and revocations spread through it. Target: at most 1.5.
//!
//! Every figure is the CPU time of this thread summed over several rounds
//! (`/proc/thread-self/schedstat`; wall time where that is missing): the
//! machine is shared, and wall time would count other processes. Rounds
//! alternate between the two sides of a ratio. `--quick` uses 100,000 events
//! of history instead of 1,000,000.
//!
//! The measurements live in `common/auth_rows.rs`, which `perf_report`
//! includes too (its rows of the same names).

#[path = "common/auth_rows.rs"]
mod auth_rows;
#[path = "common/cpu.rs"]
mod cpu;

use auth_rows::{AppendSigned, IngestSigned, MembershipGrowth};

fn holds(ok: bool) -> &'static str {
    if ok { "holds" } else { "MISSED" }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n, rounds, big) = auth_rows::sizes(quick);
    let i = auth_rows::ingest_signed(n, rounds);
    println!(
        "ingest_signed             {:.0} blocks/s signed; unsigned {:.0}/s, bare verify {:.0}/s; ratio {:.2} (target >= {}) {}",
        i.signed,
        i.unsigned,
        i.verify,
        i.ratio,
        IngestSigned::TARGET,
        holds(i.ratio >= IngestSigned::TARGET)
    );
    let a = auth_rows::append_signed(n, rounds);
    println!(
        "append_signed             {:.0} events/s; bare sign+encode+hash {:.0}/s; ratio {:.2} (target >= {}) {}",
        a.append,
        a.bare,
        a.ratio,
        AppendSigned::TARGET,
        holds(a.ratio >= AppendSigned::TARGET)
    );
    let m = auth_rows::membership_check_growth(big, rounds);
    println!(
        "membership_check_growth   one event: {:.1} µs at {} events, {:.1} µs at 1,000; ratio {:.2} (target <= {}) {}",
        m.large_us,
        m.big,
        m.small_us,
        m.ratio,
        MembershipGrowth::TARGET,
        holds(m.ratio <= MembershipGrowth::TARGET)
    );
}
