//! Arbitrary bytes as a sync protocol message to a replica with history, in
//! the middle of a session: a typed error or progress, never a panic or an
//! allocation the bytes do not pay for (run with `-malloc_limit_mb`).
#![no_main]

#[allow(dead_code)]
#[path = "../../tests/fuzz_regressions.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_sync_message(data));
