//! cargo fuzz target: `apotheca_fuzz_checks::response_head` on the fuzzer's bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| apotheca_fuzz_checks::response_head(data));
