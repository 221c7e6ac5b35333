//! Every record decoder (engine records, group journal records, group checkpoints) over
//! arbitrary bytes, raw and with valid CRCs added; what decodes must re-encode faithfully.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sluice_engine::fuzzing::decode_records(data);
});
