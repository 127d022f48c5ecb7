//! cargo-fuzz target `liveness`: see `vxrouter_fuzz::liveness`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vxrouter_fuzz::liveness(data));
