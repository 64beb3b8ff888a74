//! Arbitrary bytes through the record-batch validator Produce runs on producer input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sapper_fuzz::iterate_batches(data);
});
