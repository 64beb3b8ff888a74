//! Arbitrary bytes through the request decoder the broker runs on every frame.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sapper_fuzz::decode_request(data);
});
