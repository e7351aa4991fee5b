//! cargo-fuzz target `keyboard_decoder`: the oracle `lanehub_fuzz::keyboard_decoder` on each input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lanehub_fuzz::keyboard_decoder(data));
