//! cargo-fuzz target `topology`: see `vxrouter_fuzz::topology`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vxrouter_fuzz::topology(data));
