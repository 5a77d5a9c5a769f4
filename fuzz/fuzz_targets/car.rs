//! Arbitrary bytes as a CAR v1 file through the streaming reader and `read_car`.
#![no_main]

#[allow(dead_code)]
#[path = "../../tests/fuzz_regressions.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_car(data));
