//! cargo-fuzz target `pipeline`: see `vxrouter_fuzz::pipeline`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vxrouter_fuzz::pipeline(data));
