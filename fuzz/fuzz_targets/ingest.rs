//! Arbitrary bytes drive a generator of valid, mutated, foreign, orphaned and
//! random blocks delivered to one replica; the DAG, heads, order and store
//! must agree and hold exactly the valid descendants of the genesis.
#![no_main]

#[allow(dead_code)]
#[path = "../../tests/fuzz_regressions.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::check_ingest(data);
});
