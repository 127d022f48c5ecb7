//! cargo-fuzz target `store`: see `vxrouter_fuzz::store`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vxrouter_fuzz::store(data));
