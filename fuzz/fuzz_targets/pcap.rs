//! cargo-fuzz target `pcap`: see `vxrouter_fuzz::pcap`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vxrouter_fuzz::pcap(data));
