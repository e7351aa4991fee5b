//! cargo-fuzz target `webhook_verify`: the oracle `lanehub_fuzz::webhook_verify` on each input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lanehub_fuzz::webhook_verify(data));
