//! cargo-fuzz target `classify_scan`: the oracle `lanehub_fuzz::classify_scan` on each input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lanehub_fuzz::classify_scan(data));
