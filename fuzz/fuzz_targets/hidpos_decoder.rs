//! cargo-fuzz target `hidpos_decoder`: the oracle `lanehub_fuzz::hidpos_decoder` on each input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lanehub_fuzz::hidpos_decoder(data));
