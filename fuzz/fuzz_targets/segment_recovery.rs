//! Opening a stream directory whose segment files (and meta offset) come from the input:
//! recovery, reads, a few writes, a clean reopen that must see the same data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_engine::fuzzing;

fuzz_target!(|data: &[u8]| {
    fuzzing::recover(&fuzzing::segment_image(data));
});
