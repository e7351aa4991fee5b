//! cargo-fuzz target `terminal_api_bodies`: the oracle `lanehub_fuzz::terminal_api_bodies` on each input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lanehub_fuzz::terminal_api_bodies(data));
