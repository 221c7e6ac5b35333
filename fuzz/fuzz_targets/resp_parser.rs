//! The RESP request parser: whole, split and byte-wise feeding agree; redis-protocol's
//! decoder as an oracle for canonical multibulk frames (see `checks::resp_parser`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::resp_parser(data));
