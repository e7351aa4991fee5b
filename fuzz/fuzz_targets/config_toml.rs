//! cargo-fuzz target `config_toml`: the oracle `lanehub_fuzz::config_toml` on each input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lanehub_fuzz::config_toml(data));
