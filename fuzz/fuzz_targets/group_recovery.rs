//! Opening a real stream whose consumer-group journal and checkpoint come from the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_engine::fuzzing;

fuzz_target!(|data: &[u8]| {
    fuzzing::recover(&fuzzing::group_image(data));
});
