//! cargo-fuzz target `liveness_keyed`: see `vxrouter_fuzz::liveness_keyed`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vxrouter_fuzz::liveness_keyed(data));
