//! Arbitrary bytes as an event block: a typed error, or an event that
//! re-encodes to the same bytes and whose CID recomputes.
#![no_main]

#[allow(dead_code)]
#[path = "../../tests/fuzz_regressions.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_decode_event(data));
